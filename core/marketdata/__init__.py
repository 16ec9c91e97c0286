"""Market data: records, intervals, chart flow windows, alignment, AiTrados-protocol clients and the local replay server."""
