"""The ledger on PostgreSQL: tables, bulk encoding, loading a batch's state, writing its result, reads, verify.

Everything in `ledger/` outside this package is pure: the rules decide, this package stores (docs/design.md §2).
"""
