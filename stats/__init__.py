"""Participation statistics for programme leads: facts from tc.ledger, figures with small-number suppression."""
