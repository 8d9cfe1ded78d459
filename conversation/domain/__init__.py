"""Pure domain: messages, conversations, token budgets. Imports nothing of the project, no I/O."""
