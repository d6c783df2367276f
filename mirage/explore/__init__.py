"""The Mirage explorer: steer the world model in a browser and watch its memory grow."""
