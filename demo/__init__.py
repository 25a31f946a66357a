"""Demo shop services (order, inventory, payment, shipping) and their faults."""
