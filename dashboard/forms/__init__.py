"""Forms parse browser input into the shapes the services expect and call one service,
one module per page family; `base.ServiceForm` shows the service's field errors."""
