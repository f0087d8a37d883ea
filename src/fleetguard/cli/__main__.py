from fleetguard.cli.main import run

run()
