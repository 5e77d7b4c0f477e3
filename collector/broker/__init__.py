"""Keeping Mosquitto's password and ACL files in step with the devices in the database."""
