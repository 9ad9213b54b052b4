"""Actors: the demo tree now; exchange connection, order, position, saga, risk later."""

from phalanx.actors._demo import DemoJob, DemoTick, Ticker, TickerPrinter, Worker, spawn_demo

__all__ = ["DemoJob", "DemoTick", "Ticker", "TickerPrinter", "Worker", "spawn_demo"]
