"""Common core shared by every service: config, server/channel factory, errors, logging, time."""
