"""`python -m booking_svc`: run the booking service until SIGTERM."""

from booking_svc.server import create_server
from booking_svc.settings import BookingSettings
from ticketing_common.server import run

if __name__ == "__main__":
    run("booking_svc", BookingSettings, create_server)
