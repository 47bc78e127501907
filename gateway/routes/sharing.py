"""Placeholder until its issue lands; registered so the app factory stays stable."""
from aiohttp import web

routes = web.RouteTableDef()
