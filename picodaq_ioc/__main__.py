"""``python -m picodaq_ioc`` is ``picodaq-ioc``."""

from picodaq_ioc.ioc.cli import main

if __name__ == "__main__":
    main()
