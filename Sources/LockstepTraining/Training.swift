// Training loop, configuration, schedules.
