"""The local platform: services that stand in for the cloud on one machine (moto's AWS,
PostgreSQL, the MLflow server and the model server), listed in ``infra.local.registry``."""
