"""Communication between chips: routes, link loads, collective algorithms and their prices."""
