"""The main conversation (SPEC 4): a main agent that takes events in order and hands long work to
background agents. Built on `bgagents.core`; knows nothing of HTTP or the terminal."""
