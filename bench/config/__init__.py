"""Configuration: a preset (TOML in ``bench/presets/``) loaded with its command-line overrides
(``presets``), checked value by value (``checks``) and parsed once into frozen typed settings
(``settings`` for the whole preset, ``eval_settings`` for its ``[eval]`` sweep, plus the epsilon
units it is written in, ``epsilon_units``). A results folder records the settings that made it
(``folder_settings``). Nothing below this package indexes a dict by a key string."""
