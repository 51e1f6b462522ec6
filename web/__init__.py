"""The web app: server-rendered pages for the people a programme serves (docs/design.md §8)."""
