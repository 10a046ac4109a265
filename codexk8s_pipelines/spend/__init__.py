"""What runs cost: the `spend` asset (daily), its monthly-budget check and `codexk8s spend`."""
