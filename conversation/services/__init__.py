"""Use cases over ports: save, context, sessions, migration."""
