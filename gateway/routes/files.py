from aiohttp import web

routes = web.RouteTableDef()
background_tasks: list = []
