"""Adapters: Redis, PostgreSQL, tiktoken, Celery dispatch, embedded servers."""
