"""A tiny host application: bakery orders, and the jobs they enqueue."""
