"""Several coordinators on one Redis and PostgreSQL: who leads (pure logic, no I/O)."""
