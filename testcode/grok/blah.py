# grok/blah.py
print("I'm grok.blah")
