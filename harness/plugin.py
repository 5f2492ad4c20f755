"""pytest plugin: options and fixtures that wire boards, lab, console and results together."""
