"""Configuration: one frozen settings object read from the environment, and the Celery setup."""
