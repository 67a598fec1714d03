DROP TABLE events;

DROP TABLE performers;

DROP TABLE venues;
