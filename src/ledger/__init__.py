"""Write side of the register: domain aggregates, rules, application service, event store."""
