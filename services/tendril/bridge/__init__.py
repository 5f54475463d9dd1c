"""The job bridge: one gRPC server per job on a Unix socket in its work dir, inside JobService."""
