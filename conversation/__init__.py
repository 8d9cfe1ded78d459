"""The conversation service: remembers every conversation of an AI-agent platform."""
