"""Azure pieces: network, AKS, PostgreSQL Flexible Server, Managed Redis, Files and Blob logs, each with its settings."""
