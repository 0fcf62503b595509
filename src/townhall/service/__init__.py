"""Application services: the domain rules applied to the store, the state and the media."""
