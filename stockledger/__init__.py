"""stockledger: stock, credit and books kept consistent across POS, web and ERP events on Kafka."""

__version__ = "0.1.0"
