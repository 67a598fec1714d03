DROP PUBLICATION ticketing_search;
