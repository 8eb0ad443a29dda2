"""PostgreSQL itself: connections and the session settings every one of them pins, catalog queries
(one home each), locks taken in short attempts, and serial and identity sequences."""
