"""AWS pieces: network, EKS, RDS, ElastiCache, EFS and S3 task logs, each with its settings."""
