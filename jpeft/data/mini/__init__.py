"""The generators of Mini VTAB (`jpeft.data.mini_vtab`): shared drawing code (`draw`) and one module per
task."""
