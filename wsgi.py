from tardist import create_app

app = create_app()
