"""Builders that tests/ and bench/ share: artifacts in the exact storage contract and a botify served on
loopback. Product code never imports this package, and it is not shipped to clusters."""
