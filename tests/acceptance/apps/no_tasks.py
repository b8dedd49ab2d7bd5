"""An --app module that imports fine but registers no task."""
