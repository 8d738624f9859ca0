"""Demo data for NetBox (``manage.py seed_netbox``): a deterministic network, reconciled through the planner."""
