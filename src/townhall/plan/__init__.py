"""`townhall plan`: how many nodes a crowd needs, from figures the bench measured."""
