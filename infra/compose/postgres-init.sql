-- Prefect keeps its state in its own database beside docvl's (the official image runs this once, at init).
CREATE DATABASE prefect;
