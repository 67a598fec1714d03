"""`python -m search_svc`: run the search service until SIGTERM."""

from search_svc.server import create_server
from search_svc.settings import SearchSettings
from ticketing_common.server import run

if __name__ == "__main__":
    run("search_svc", SearchSettings, create_server)
