# grok/__init__.py
print("I'm grok.__init__")
