"""The published event schemas: one module per producer, versioned type names.

The only code one service shares with another. A consumer imports the producer's
contract from here, never the producer's own modules; nothing here imports anything
of ours but pydantic types (checked by import-linter in `make lint`).
"""
