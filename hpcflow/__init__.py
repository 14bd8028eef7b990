"""hpcflow: workflows of many command-line jobs on Slurm, AWS EC2 and local machines."""

__version__ = "0.1.0"
# The torc wire contract this server speaks.
API_VERSION = "v0.6.4"
