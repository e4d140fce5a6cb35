"""Engines: what runs ready tasks and ends their futures, behind one interface
(``interface.Engine``); ``outcome`` is where every future is completed."""
