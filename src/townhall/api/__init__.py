"""HTTP routes and their request/response shapes; transports at the edge."""
