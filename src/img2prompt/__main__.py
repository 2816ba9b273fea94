from img2prompt.app.cli import main

main()
