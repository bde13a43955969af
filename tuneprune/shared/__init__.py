"""What every layer shares: typed configuration (``config``) and the rule of a Pareto front (``pareto``)."""
