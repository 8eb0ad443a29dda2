"""The replication engine: plain functions over psycopg 3 connections and a snapshot folder.

Nothing in this package imports Dagster, so every piece can be called from a test, a script or
another orchestrator with two connections and a directory.
"""
