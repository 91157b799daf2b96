"""User settings in the home database: validated rows, history, and the watch that lets running programs pick up a change."""
