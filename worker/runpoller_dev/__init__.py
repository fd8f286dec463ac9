"""Development helpers: ``make demo`` and the Redis finder/starter ``make test`` runs under."""
